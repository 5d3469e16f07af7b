"""llama-cpp-python's own OpenAI-compatible server app (FastAPI) serving SmolLM2-135M, with footprint's ASGI
middleware added the way a user adds it: `app.add_middleware(FootprintMiddleware)`.

    python llama_app.py PORT GGUF
"""

from __future__ import annotations

import sys

import uvicorn
from llama_cpp.server.app import create_app
from llama_cpp.server.settings import ModelSettings, ServerSettings

from footprint.asgi import FootprintMiddleware

port, gguf = int(sys.argv[1]), sys.argv[2]
app = create_app(server_settings=ServerSettings(host="127.0.0.1", port=port, interrupt_requests=False),
                 model_settings=[ModelSettings(model=gguf, model_alias="smollm2-135m", n_ctx=1024, n_threads=2,
                                               verbose=False)])
app.add_middleware(FootprintMiddleware)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
