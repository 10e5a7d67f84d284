"""Restricted Boltzmann machines: the model and its objectives (``rbm``), the partition
function (``partition``: exact enumeration, AIS) and the recipes (``family``)."""
