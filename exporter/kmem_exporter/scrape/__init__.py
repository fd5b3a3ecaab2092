"""A scrape: the collectors run once for every request that joins, their families assembled and rendered."""
