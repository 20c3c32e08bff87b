"""The peer benchmark's parts (bench/peer_jasmin.py): Jasmin's setup and jCli, a minimal
SMPP message centre, the two systems and their shared wrk load."""
