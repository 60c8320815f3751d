"""Delta Sharing: an extract grant's table served to Delta Sharing clients, with its profile page."""
