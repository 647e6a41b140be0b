"""`make bench`: envbranch's clone strategies against what a user would do by hand, side by side."""
