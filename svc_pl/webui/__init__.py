"""``svc-pl webui``: convert, compare and train in a browser.

:mod:`svc_pl.webui.convert` and :mod:`svc_pl.webui.train` hold what the page does and import no Gradio;
:mod:`svc_pl.webui.app` is the page (Gradio, the optional extra ``svc_pl[webui]``).
"""
