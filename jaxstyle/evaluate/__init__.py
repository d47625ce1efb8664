"""Loss and gradient of the objective: whole, tile by tile, or streamed in bands, and the plan that picks one."""
