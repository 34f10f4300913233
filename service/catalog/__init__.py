"""The model side: named models and their versions (registry), each version's life from load to
free (lifecycle), the model state shared by every worker and kept across restarts (state, store),
the watched checkpoint folder and state file (watcher), the text cache."""
