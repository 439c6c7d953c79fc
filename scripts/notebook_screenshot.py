"""The README's picture of the notebook: the executed notebook that tests/test_notebook.py leaves
in test-output/notebook/, rendered to HTML by nbconvert and photographed by headless Chromium
(Debian's, as tests/test_ui.py launches it). Usage: python scripts/notebook_screenshot.py [OUT.png]"""
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(out: str = str(ROOT / "docs" / "notebook.png")) -> None:
    import nbformat
    from nbconvert import HTMLExporter
    from playwright.sync_api import sync_playwright

    executed = ROOT / "test-output" / "notebook" / "gd_vs_sgd.ipynb"
    nb = nbformat.read(executed, as_version=4)
    html, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
    page_file = executed.with_suffix(".html")
    page_file.write_text(html)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(page_file.as_uri())
        page.screenshot(path=out, full_page=True)
        browser.close()
    print(f"wrote {out} (from {page_file})")


if __name__ == "__main__":
    main(*sys.argv[1:])
