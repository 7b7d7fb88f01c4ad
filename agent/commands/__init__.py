"""One module per ``fair-agent`` command: its arguments, what it does, and what it prints."""
