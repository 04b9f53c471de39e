"""pybullet worlds and bodies (installed as `amiagent.sim`).

`amiagent.sim.worlds`: the `open_field` and `two_rooms` worlds; `amiagent.sim.body`:
the point robot; `amiagent.sim.geometry` and `amiagent.sim.truth`: zone geometry
and ground-truth measurement. Nothing is imported here, so importing the package
does not load pybullet.
"""
