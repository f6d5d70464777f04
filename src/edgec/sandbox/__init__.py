"""Everything that touches an untrusted model runs in a confined child process.

- ``kernel``: what Linux offers (resource limits, a network namespace, Landlock).
- ``launch``: starting a child that confines itself before it imports anything heavy.
- ``worker``: the model process of a command (build, inspect, fit trials): TensorFlow and
  the model live there; the parent relays its progress and writes its outputs.
"""
