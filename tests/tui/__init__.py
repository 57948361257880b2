"""Tests of the screens (Textual pilot and snapshot tests)."""
