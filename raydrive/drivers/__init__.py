"""Built-in drivers. Each is registered in ``raydrive.drivers`` like any third-party driver."""
