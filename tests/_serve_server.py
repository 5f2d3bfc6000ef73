"""Test-only: run the service on the stand-in bundle (tests/_serve_standin.py) in a real uvicorn process.

    python tests/_serve_server.py --port P --root DIR [--versions v1,v2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import uvicorn  # noqa: E402

from tests import _serve_standin as standin  # noqa: E402
from trustml_lab.serve.app import create_app  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--versions", default="v1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    frame = standin.german()
    registry, _ = standin.build_registry(args.root, frame=frame, versions=tuple(args.versions.split(",")))
    app = create_app(registry, reference=frame.iloc[:700], load=standin.load)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
