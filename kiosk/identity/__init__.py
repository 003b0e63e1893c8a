"""Reading the patient's Carte Vitale.

Layers, from the wire up:

- :mod:`.tlv` and :mod:`.apdu`: BER-TLV and ISO 7816-4 APDUs, no I/O.
- :mod:`.vitale`: the public-layout reader as a sans-IO state machine that yields
  command APDUs and consumes responses (``PROTOCOLS.md``, "Carte Vitale over PC/SC").
- :mod:`.identity`: the :class:`~.identity.IdentityReader` interface and the
  identity dataclasses; the NIR is masked everywhere except on explicit request.
- :mod:`.pcsc`: pyscard over pcscd, reader and card events brought to asyncio.
- :mod:`.virtual`: vpcd virtual cards for tests and the demo.
"""
