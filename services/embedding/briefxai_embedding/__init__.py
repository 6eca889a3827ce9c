"""BriefXAI embedding service: texts in, L2-normalized vectors out (all-MiniLM-L6-v2 offline, or an API)."""
