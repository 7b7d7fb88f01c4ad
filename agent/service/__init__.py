"""The running agent: discovering sessions, deciding when they are complete, watching folders, the
bounded queue of workers, burst-mode scans, the daemon itself, and what it tells the outside world
(systemd notifications, Prometheus metrics, live status, JSON logs)."""
