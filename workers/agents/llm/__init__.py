"""The built-in llm agent (any OpenAI-compatible Chat Completions server) and its scripted test server."""

from workers.agents.llm.agent import SENTINEL, LlmAgent
from workers.agents.llm.client import ChatClient, ModelServerError
from workers.agents.llm.config import LlmConfig, LlmConfigError, load_config

__all__ = ["SENTINEL", "ChatClient", "LlmAgent", "LlmConfig", "LlmConfigError", "ModelServerError", "load_config"]
