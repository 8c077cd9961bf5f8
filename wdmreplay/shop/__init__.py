"""The reference shop: an aiohttp.web implementation of API.md, the embedded default target."""
