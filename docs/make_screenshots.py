"""Make the dashboard screenshots of the docs: the demo ward of ``medtwin serve --demo`` in headless Chromium.

Usage (Debian's chromium and playwright installed)::

    python docs/make_screenshots.py [--out docs] [--chromium /usr/bin/chromium]

Serves the full demo ward (:func:`medtwin.service.demo.seed_demo`, the default patients) from a temporary
folder on a free loopback port, logs in as the demo clinician and writes ``service-dashboard.png`` (an ICU
patient's live twin) and ``service-ward.png`` (the patient list), each quantised to 256 colours to stay small.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path


def _serve(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("uvicorn did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def _small_png(path: Path) -> None:
    from PIL import Image

    image = Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent), help="folder of the PNG files")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from medtwin.service import demo
    from medtwin.service.app import create_app
    from medtwin.service.settings import ServiceSettings

    out = Path(args.out)
    with tempfile.TemporaryDirectory() as home:
        app = create_app(ServiceSettings(database_url=f"sqlite:///{home}/demo.db", home=home, secret_key="d" * 32,
                                         log_level="WARNING"))
        server, thread, url = _serve(app)
        try:
            demo.seed_demo(app, console=None)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1200, "height": 860})
                page.goto(f"{url}/ward/login")
                page.get_by_label("User name").fill("clinician")
                page.get_by_label("Password").fill(demo.demo_password("clinician"))
                page.get_by_role("button", name="Log in").click()
                page.wait_for_load_state()
                page.screenshot(path=str(out / "service-ward.png"))
                page.goto(f"{url}/ward/patients/icu-1")
                page.wait_for_selector("#posterior-chart svg.main-svg")
                page.screenshot(path=str(out / "service-dashboard.png"))
                browser.close()
        finally:
            server.should_exit = True
            thread.join(10)
    for name in ("service-ward.png", "service-dashboard.png"):
        _small_png(out / name)
        print(f"{out / name}: {(out / name).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
