"""What the vote-flood benchmark serves beside the app: reference views that show what one
database round trip and one committed row cost on the same server."""
