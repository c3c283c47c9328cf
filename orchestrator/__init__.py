"""The control plane: tickets, repositories, review, views, stats and the web app; it never imports workers/."""
