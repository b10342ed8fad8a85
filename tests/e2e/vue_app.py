"""The vue-web template's App.vue with a placeholder heading, and two ways to break it: the
files the Vue tests (agent and browser) write."""

from __future__ import annotations

VUE_APP = """<script setup>
import { ref } from 'vue'

const count = ref(0)
</script>

<template>
  <main>
    <h1 id="title">TITLE</h1>
    <button id="counter" type="button" @click="count++">count is {{ count }}</button>
  </main>
</template>
"""
TITLE_LINE = 9
SCRIPT_LINE = 4


def vue_app_source(title: str) -> str:
    return VUE_APP.replace("TITLE", title)


def broken_template(title: str) -> tuple[str, int]:
    """The heading closed with the wrong tag (the Vue template compiler's error), and the
    1-based column of that closing tag."""
    source = vue_app_source(title).replace(f"{title}</h1>", f"{title}</h2>")
    return source, source.splitlines()[TITLE_LINE - 1].index("</h2>") + 1


def broken_script(title: str) -> tuple[str, int]:
    """A <script setup> Babel cannot parse (`const = ref(0)`), and the 1-based column of the
    token it stops at."""
    source = vue_app_source(title).replace("const count = ref(0)", "const = ref(0)")
    return source, source.splitlines()[SCRIPT_LINE - 1].index("=") + 1
