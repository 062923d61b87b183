"""Load a config with every backend of every seam in a fresh interpreter and report, as JSON,
which heavy libraries that imported and what making each backend does:

    python tests/helpers/seam_imports.py REPLAY_FOLDER [MISSING,MODULES]

With MISSING (e.g. ``numpy,cv2``), importing those fails as on the trap's core install.
Prints ``{"imported": [...], "loaded": [seam/type...], "made": {seam/type: "ok" | error}}`` for
every registered backend of the camera, flash, sensors and detector seams.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEAVY = ("numpy", "cv2", "picamera2", "libcamera", "onnxruntime", "torch")

#: The keys a backend's section needs to be valid (others: ``type`` alone).
NEEDED = {
    "camera": {"synthetic": {}, "replay": {"folder": "{replay}"}, "picamera2": {}, "memory": {}},
    "flash": {"none": {}, "gpio": {"pin_factory": "mock"}, "memory": {}},
    "sensors": {"none": {}, "fake": {}, "hat": {"battery": False, "iio_root": "{replay}"}},
    "detector": {
        "none": {},
        "builtin": {},
        "learned": {},
        "memory": {"outlines": [[[1, 1], [5, 1], [5, 5]]]},
    },
}


def main() -> int:
    replay, missing = sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else []
    if missing:
        sys.path.insert(0, str(Path(__file__).parent))
        from import_faults import ImportFault

        sys.meta_path.insert(0, ImportFault("missing", missing))
    from agent import registry
    from agent.config import config_from_mapping
    from agent.detect import make_detector
    from agent.errors import StickyAgentError
    from agent.hardware.camera import make_camera
    from agent.hardware.flash import make_flash
    from agent.hardware.sensors import make_sensors

    loaded, configs = [], []
    for seam in ("camera", "flash", "sensors", "detector"):
        for name in registry.backends(seam):
            keys = NEEDED[seam].get(name, {})
            section = {k: (v.format(replay=replay) if isinstance(v, str) else v) for k, v in keys.items()}
            config = config_from_mapping({seam: {"type": name, **section}}, environ={})
            loaded.append(f"{seam}/{name}")
            configs.append((seam, name, config))
    imported = [m for m in HEAVY if m in sys.modules]
    makers = {"camera": make_camera, "flash": make_flash, "sensors": make_sensors, "detector": make_detector}
    made = {}
    for seam, name, config in configs:
        if seam == "camera" and name == "picamera2":
            continue  # made, it only fails when opened (tests/test_camera_contract.py)
        try:
            backend = makers[seam](getattr(config, seam))
            if backend is not None:
                backend.close()
            made[f"{seam}/{name}"] = "ok"
        except StickyAgentError as e:
            made[f"{seam}/{name}"] = f"{type(e).__name__}: {e}"
    print(json.dumps({"imported": imported, "loaded": loaded, "made": made}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
