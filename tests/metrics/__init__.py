"""Tests for neurojax.metrics."""
