"""The console (Textual): a thin layer of screens over the headless core. The only package that imports textual."""
