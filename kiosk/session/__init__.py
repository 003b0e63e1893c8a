"""The consultation session on the booth: WebRTC peer, media tracks, ICE/TURN."""
