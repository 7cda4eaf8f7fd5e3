"""Who is calling, for which tenant, with which roles."""
