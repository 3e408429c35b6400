"""What the demo's process and browser tests share: `genzoo demo` started in its own process (``demo_server``) and
its page in headless Chromium driven by Selenium (``open_page``, a :class:`DemoPage`)."""

import io
from urllib.request import urlopen

import numpy as np
import PIL.Image
import pytest

from helpers import chromium, serving


@pytest.fixture(scope="session")
def demo_server():
    """:func:`helpers.serving`: ``with demo_server(sources, *flags, env={...}) as url: ...``."""
    return serving


class DemoPage:
    """The demo's page in a browser, by the ``elem_id`` of its components."""

    def __init__(self, browser, url: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        self.browser = browser
        self.wait = WebDriverWait(browser, 60)
        browser.get(url)
        self.wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#generate")))

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.browser.find_elements(By.CSS_SELECTOR, css)

    def value_of(self, elem_id: str) -> str:
        return self.find(f"#{elem_id} input, #{elem_id} textarea")[0].get_attribute("value")

    def text(self, elem_id: str) -> str:
        return self.find(f"#{elem_id}")[0].text

    def shown(self, elem_id: str) -> bool:
        found = self.find(f"#{elem_id}")
        return bool(found) and found[0].is_displayed()

    def choose(self, elem_id: str, text: str) -> None:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.keys import Keys

        for _ in range(5):  # the page may re-render the drop-down while we type: then type again
            try:
                box = self.find(f"#{elem_id} input")[0]
                box.click()
                box.send_keys(Keys.CONTROL, "a")
                box.send_keys(text, Keys.ENTER)
                self.wait.until(lambda _: self.value_of(elem_id) == text)
                return
            except StaleElementReferenceException:
                continue
        raise AssertionError(f"could not choose {text!r} in #{elem_id}")

    def choose_model(self, name: str) -> None:
        """Choose a model and wait until the page has caught up: its card panel names it."""
        self.choose("model", name)
        self.wait.until(lambda _: self.text("figures").startswith(name))

    def type_into(self, elem_id: str, value) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.find(f"#{elem_id} input[type=number], #{elem_id} textarea, #{elem_id} input")[0]
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(str(value))

    def images(self) -> list:
        return [e.get_attribute("src") for e in self.find("#output img")]

    def generate(self) -> np.ndarray:
        """Press Generate and read the new picture (a new picture has a new URL: the page's files are named by their
        content, so two presses in a row must ask for different pictures)."""
        old = self.images()
        self.find("#generate")[0].click()
        self.wait.until(lambda _: self.images() not in ([], old))
        return np.asarray(PIL.Image.open(io.BytesIO(urlopen(self.images()[0]).read())).convert("RGB"))


@pytest.fixture
def open_page():
    """``open_page(url)``: a :class:`DemoPage` in a fresh headless Chromium, closed after the test."""
    browsers = []

    def open_(url: str) -> DemoPage:
        browsers.append(chromium())
        return DemoPage(browsers[-1], url)

    yield open_
    for browser in browsers:
        browser.quit()
