"""The hub: signalling, waiting room, doctor console, fleet."""
