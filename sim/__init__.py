"""pybullet worlds and bodies (installed as `amiagent.sim`).

`amiagent.sim.lifecycle`: what every world shares (client, seeded reset,
substeps with ground truth, close); `amiagent.sim.simbody`: what every body
shares (command, watchdog, stop, e-stop). The point robot (`body`) lives in
the plane worlds (`plane`: their base; `worlds`: `open_field`, `two_rooms`;
`maze`), the arm (`arm`) in the `workcell`. `geometry` and `truth`: zone
geometry and ground-truth measurement. Nothing is imported here, so importing
the package does not load pybullet.
"""
