raise RuntimeError("this driver is broken on purpose")
