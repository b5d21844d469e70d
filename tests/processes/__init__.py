"""Scripts that the tests run in their own Python processes, and how to launch them."""
