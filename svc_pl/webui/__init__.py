"""``svc-pl webui``: convert, compare, train and stream live in a browser.

:mod:`svc_pl.webui.convert`, :mod:`svc_pl.webui.train` and :mod:`svc_pl.webui.live` hold what the page does and
import no Gradio; :mod:`svc_pl.webui.app` is the page (Gradio, the optional extra ``svc_pl[webui]``).
"""
