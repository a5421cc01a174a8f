"""dendsn model library: point and dendritic spiking neurons as plain torch modules.

Imported as ``dendsn``; nothing here knows about Hydra, files or logging.
"""
