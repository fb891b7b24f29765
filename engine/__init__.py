"""dropcore: a CPU engine for training and running small convolutional networks."""
__version__ = "0.1.0"
