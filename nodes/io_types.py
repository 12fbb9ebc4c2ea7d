"""The pack's own socket types (V3 custom types), shared by the node modules."""

from .api import io

Trajectory_IO = io.Custom("DDISTILL_X0_TRAJECTORY")
Recording_IO = io.Custom("DDISTILL_X0_RECORDING")
