"""The command line: argument parsing, the headless commands, and starting the console."""
