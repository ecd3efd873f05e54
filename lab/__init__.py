"""The proving ground: a recording HTTP target, POS simulators that write real export
files, and the controllers behind `make demo` and `make chaos`. Not shipped to stores.
"""
