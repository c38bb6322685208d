"""Drive `deepwarp-fast serve` in a headless Chromium: load the sample face, drag the gaze
pad, outline the faces, redirect a small video, run the live mode on Chromium's fake
camera; fail on any step that does not happen or any error in the page's console; save
docs/serve.jpg (the photo tab) for the README.

Needs what the package does not: Chromium and its driver (Debian: apt-get install
chromium chromium-driver) and selenium (pip). Run from the repository root:

    python docs/make_serve_screenshot.py [--out docs/serve.jpg]
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wait(what, fn, timeout=30.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"FAILED: {what} (waited {timeout:g} s)")


def small_video(path: Path) -> Path:
    import cv2
    import numpy as np

    from deepwarp_fast.samples import sample_face

    frame = np.ascontiguousarray(sample_face("astronaut")[40:296, 80:400, ::-1])
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (320, 256))
    for i in range(12):
        w.write(np.roll(frame, i, axis=1))
    w.release()
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/serve.jpg")
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    server = subprocess.Popen([sys.executable, "-m", "deepwarp_fast", "serve", "--port", "0"], stdout=subprocess.PIPE,
                              text=True)
    driver = None
    try:
        line = server.stdout.readline()
        url = line.split("open ", 1)[1].split()[0]
        print(f"server: {line.strip()}")
        opts = webdriver.ChromeOptions()
        # The installed browser and driver, named: selenium would otherwise look one up online.
        opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
        for flag in ("--headless=new", "--no-sandbox", "--window-size=1200,1000", "--use-fake-ui-for-media-stream",
                     "--use-fake-device-for-media-stream"):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingOptions", {"browser": "ALL"})
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(shutil.which("chromedriver")))
        driver.get(url)
        by_id = lambda i: driver.find_element(By.ID, i)  # noqa: E731

        # Photo: the sample, the pad dragged up and to the right, faces outlined.
        wait("the sample buttons", lambda: driver.find_elements(By.CSS_SELECTOR, "#samples button"))
        driver.find_elements(By.CSS_SELECTOR, "#samples button")[0].click()
        wait("the sample's faces", lambda: "1 face(s), 2 eye(s)" in by_id("photo-msg").text)
        pad = by_id("pad")
        ActionChains(driver).move_to_element_with_offset(pad, 0, 0).click_and_hold() \
            .move_by_offset(35, -15).move_by_offset(35, -15).release().perform()
        wait("the angles to follow the pad", lambda: by_id("readout").text != "vertical 0°, horizontal 0°")
        wait("a preview", lambda: "model + paste" in by_id("timing").text)
        print(f"photo: {by_id('readout').text}; {by_id('timing').text}")
        sliders = driver.execute_script("return [document.getElementById('vertical').min, document.getElementById('vertical').max]")
        print(f"slider range: {sliders}")
        time.sleep(0.5)
        png = driver.get_screenshot_as_png()
        if args.out.endswith(".png"):
            Path(args.out).write_bytes(png)
        else:  # .jpg: a tenth of the bytes for the README
            import io

            from PIL import Image

            Image.open(io.BytesIO(png)).convert("RGB").save(args.out, quality=85)
        print(f"wrote {args.out}")
        by_id("show-faces").click()
        by_id("zoom").click()
        by_id("zoom").click()
        by_id("before").click()
        assert by_id("before").text == "Show after"
        by_id("before").click()
        href = by_id("download").get_attribute("href")
        assert "format=png" in href, href

        # Video: a 12-frame clip, redirected to the end and playable.
        driver.find_element(By.CSS_SELECTOR, "nav button[data-tab=video]").click()
        with tempfile.TemporaryDirectory() as tmp:
            by_id("video-file").send_keys(str(small_video(Path(tmp) / "clip.avi")))
            by_id("video-start").click()
            wait("the video job", lambda: by_id("video-state").text.startswith(("done", "failed")), timeout=60)
        assert by_id("video-state").text == "done: 12 frames", by_id("video-state").text
        assert driver.execute_script("return document.getElementById('video-progress').value") == 1
        src = by_id("video-out").get_attribute("src")
        wait("the video to load", lambda: driver.execute_script("return document.getElementById('video-out').readyState") >= 1)
        print(f"video: {by_id('video-state').text}; {src}")

        # Live: Chromium's fake camera (a test pattern, no face) through the WebSocket.
        driver.find_element(By.CSS_SELECTOR, "nav button[data-tab=live]").click()
        by_id("live-start").click()
        wait("live frames", lambda: "fps" in by_id("live-stats").text, timeout=30)
        time.sleep(2)
        print(f"live: {by_id('live-stats').text}")
        by_id("live-stop").click()

        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            for e in errors:
                print(f"console error: {e['message']}")
            return 1
        print("no errors in the page's console")
        return 0
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    raise SystemExit(main())
