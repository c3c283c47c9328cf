"""The environment cache: a virtualenv built once is restored into other checkouts, relocated, isolated and bounded."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from system.git import git
from tests.wheelhouse import build_wheelhouse
from verification.envcache import DEFAULT_KEY_FILES, EnvCache
from verification.environment import CacheUse, SetupFailed, set_up_environment
from workers.worktree import WorktreePool

SITE = f".venv/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
# An editable install in miniature: a virtualenv whose .pth file puts the checkout itself on sys.path.
VENV_SETUP = (
    f"echo run >> {{counter}} && {shlex.quote(sys.executable)} -m venv --without-pip .venv"
    f' && echo "$PWD" > {SITE}/checkout.pth'
)


def _set_up(cache: EnvCache, path: Path, command: str, scope: str = "agent") -> tuple[str, ...]:
    use = CacheUse(cache, scope, (), DEFAULT_KEY_FILES)
    env = {"PATH": "/usr/bin:/bin"}
    return set_up_environment(path, command, where="a test checkout", timeout=60, env=env, cache=use).created


def _imported_from(checkout: Path) -> str:
    code = "import calc; print(calc.__file__)"
    return subprocess.run(
        [checkout / ".venv/bin/python", "-c", code], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def cache(tmp_path: Path) -> EnvCache:
    return EnvCache(tmp_path / "envs", max_bytes=2**30)


def test_a_restored_virtualenv_is_relocated_to_its_new_checkout(
    cache: EnvCache, pool: WorktreePool, base_sha: str, tmp_path: Path
) -> None:
    counter = tmp_path / "setups"
    setup = VENV_SETUP.format(counter=counter)
    with pool.lease(base_sha) as first, pool.lease(base_sha) as second:
        assert _set_up(cache, first.path, setup) == (".venv",)
        assert _set_up(cache, second.path, setup) == (".venv",)
        assert counter.read_text().count("run") == 1  # the second checkout was restored, not set up
        assert _imported_from(second.path).strip() == str(second.path / "calc.py")
        assert _imported_from(first.path).strip() == str(first.path / "calc.py")
        scripts = [p for p in (second.path / ".venv" / "bin").iterdir() if p.is_file() and not p.is_symlink()]
        assert all(str(first.path) not in p.read_text(errors="replace") for p in scripts)


def test_writes_into_a_restored_environment_never_reach_the_cache(
    cache: EnvCache, pool: WorktreePool, base_sha: str, tmp_path: Path
) -> None:
    setup = VENV_SETUP.format(counter=tmp_path / "setups")
    with pool.lease(base_sha) as first:
        _set_up(cache, first.path, setup)
    with pool.lease(base_sha) as poisoned:
        _set_up(cache, poisoned.path, setup)
        pth = poisoned.path / SITE / "checkout.pth"
        assert pth.stat().st_nlink == 1  # a copy, not a link into the cache
        pth.write_text("/somewhere/else\n")
        (poisoned.path / SITE / "planted.py").write_text("PLANTED = True\n")
        with pool.lease(base_sha) as clean:
            _set_up(cache, clean.path, setup)
            assert (clean.path / SITE / "checkout.pth").read_text().strip() == str(clean.path)
            assert not (clean.path / SITE / "planted.py").exists()


def test_the_key_follows_the_manifests_the_command_and_the_scope(
    cache: EnvCache, pool: WorktreePool, base_sha: str
) -> None:
    with pool.lease(base_sha) as wt:
        use = CacheUse(cache, "agent", (), DEFAULT_KEY_FILES)
        key = use.key(wt.path, "make env")
        assert use.key(wt.path, "make env") == key
        assert use.key(wt.path, "make env --other") != key
        assert CacheUse(cache, "verify", (), DEFAULT_KEY_FILES).key(wt.path, "make env") != key
        (wt.path / "notes.txt").write_text("not a manifest\n")
        (wt.path / "calc.py").write_text("# code is not part of the key\n")
        assert use.key(wt.path, "make env") == key
        (wt.path / "requirements.txt").write_text("rich==15\n")
        git("add", "requirements.txt", cwd=wt.path)
        assert use.key(wt.path, "make env") != key


def test_a_setup_that_edits_tracked_files_or_fails_is_not_cached(
    cache: EnvCache, pool: WorktreePool, base_sha: str, tmp_path: Path
) -> None:
    with pool.lease(base_sha) as wt:
        edits = "mkdir -p build && echo out > build/x && echo '# generated' >> calc.py"
        env = set_up_environment(
            wt.path,
            edits,
            where="w",
            timeout=60,
            env={"PATH": "/usr/bin:/bin"},
            cache=CacheUse(cache, "agent", (), DEFAULT_KEY_FILES),
        )
        assert "environment not cached: the setup changed tracked files (calc.py)" in env.log
        with pytest.raises(SetupFailed, match=r"setup in a test checkout failed \(exit 4\)"):
            _set_up(cache, wt.path, "mkdir -p half && exit 4")
    assert cache.entries() == []


def test_least_recently_used_entries_are_evicted_but_never_one_in_use(
    pool: WorktreePool, base_sha: str, tmp_path: Path
) -> None:
    cache = EnvCache(tmp_path / "envs", max_bytes=2_500_000)
    big = "mkdir -p env && head -c 1000000 /dev/urandom > env/blob && echo {n} > env/n"
    with pool.lease(base_sha) as wt:
        _set_up(cache, wt.path, big.format(n=1))
        [oldest] = cache.entries()
        with cache.reading(oldest.path.name):
            for n in (2, 3):
                git("clean", "-fdxq", cwd=wt.path)
                _set_up(cache, wt.path, big.format(n=n))
            assert oldest.path.exists()  # over the bound, but being restored: spared
        git("clean", "-fdxq", cwd=wt.path)
        _set_up(cache, wt.path, big.format(n=4))
    names = [e.path.name for e in cache.entries()]
    assert len(names) == 2 and oldest.path.name not in names
    assert sum(e.size for e in cache.entries()) <= 2_500_000


def test_a_real_editable_install_is_restored_into_another_checkout_and_imports_from_it(
    cache: EnvCache, pool: WorktreePool, base_sha: str, tmp_path: Path
) -> None:
    wheelhouse = build_wheelhouse(tmp_path / "wheelhouse", ("setuptools", "wheel", "packaging"))
    setup = (
        f"{shlex.quote(sys.executable)} -m venv .venv && .venv/bin/pip install -q --no-index"
        f" --find-links {shlex.quote(str(wheelhouse))} -e ."
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    use = CacheUse(cache, "verify", (), DEFAULT_KEY_FILES)
    with pool.lease(base_sha) as first, pool.lease(base_sha) as second:
        built = set_up_environment(first.path, setup, where="w", timeout=300, env=env, cache=use)
        restored = set_up_environment(second.path, setup, where="w", timeout=300, env=env, cache=use)
        assert built.created == (".venv", "calc.egg-info")  # ignored folders inside .venv are not listed again
        assert "restored from the cache" in restored.log and restored.created == built.created
        assert _imported_from(second.path).strip() == str(second.path / "calc.py")
