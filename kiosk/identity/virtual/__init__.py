"""Virtual smart cards for tests and the demo.

- :mod:`.card`: the card logic, sans-IO (an ISO 7816-4 file system answering
  SELECT / READ BINARY / GET RESPONSE), no sockets.
- :mod:`.vpcd`: the vpcd wire framing (sans-IO) and the asyncio TCP adapter
  that plugs a card into pcscd's vpcd reader driver (``PROTOCOLS.md``,
  "Virtual cards for tests: the vpcd protocol").
- :mod:`.cards`: the test cards, all with synthetic identities.
"""
