"""The model side: named models and their versions, the watched checkpoint folder, the text cache."""
