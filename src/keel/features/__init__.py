"""Features as code: prompts versioned from git, feature specs, the feature pipeline."""
