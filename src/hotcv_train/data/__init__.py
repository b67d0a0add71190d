"""Data that ships with the framework: built-in (digits) and generated (synthetic) datasets."""
