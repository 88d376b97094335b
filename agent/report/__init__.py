"""Post-incident reports and periodic reviews, built from what the store holds."""
