"""The catalogue on a web page and a JSON API: server-rendered, read-only, loopback unless protected."""
