"""Peripheral drivers for the booth: bytes in, typed readings out.

Nothing here knows about the kiosk, its UI or the network.
"""
