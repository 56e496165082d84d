"""IoT Edge edgeHub: a transparent gateway with routes, module endpoints and store-and-forward."""
