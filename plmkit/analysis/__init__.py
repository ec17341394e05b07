"""Looking inside a trained member: one module per method of the analysis literature, each behind
`plmkit analyze METHOD`. Attention weights come from the eager attention path, asked for by name."""
