"""Development tools that the container does not ship: the local host, embedded servers, encoder fitting."""
