"""symbolize layer."""
