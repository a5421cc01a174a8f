"""Layers between neurons: `synapses` (weights and synaptic filters), `competition` (lateral
inhibition, k-winner-take-all), `recurrent` (recurrent synapses)."""
