"""Things that need their own train step (sharpness-aware minimization and the like)."""
