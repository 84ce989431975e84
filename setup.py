"""Build cypid: the Cython hot path in pyx/, the Python packages mapped into one ``cypid`` namespace."""
import glob
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
# Folders of this tree and the cypid sub-package each one installs as.
PACKAGES = {
    "cypid.pyx": "pyx",
    "cypid.broker": "broker",
    "cypid.broker.management": "broker/management",
    "cypid.broker.http": "broker/http",
    "cypid.client": "client",
    "cypid.tools": "tools",
    "cypid.perf": "perf",
    "cypid.ha": "ha",
    "cypid.ha.ocf": "ha/ocf",
}


def cython_include_dir():
    """Cython resolves ``cimport cypid.pyx.x`` by path: give it a cypid/pyx that points at pyx/."""
    inc = os.path.join(HERE, "build", "cyinc")
    link = os.path.join(inc, "cypid", "pyx")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if not os.path.islink(link):
        os.symlink(os.path.join(HERE, "pyx"), link)
    return inc


def extensions():
    from Cython.Build import cythonize

    debug = os.environ.get("CYPID_DEBUG") == "1"
    exts = [
        Extension(
            "cypid.pyx." + os.path.splitext(os.path.basename(path))[0],
            [path],
            extra_compile_args=["-O2"] if not debug else ["-O0", "-g"],
            define_macros=[("CYTHON_TRACE", "1")] if debug else [],
        )
        for path in sorted(glob.glob("pyx/*.pyx"))
    ]
    return cythonize(
        exts,
        include_path=[cython_include_dir()],
        language_level=3,
        annotate=debug,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "linetrace": debug,
        },
    )


setup(
    name="cypid",
    version="0.1.0",
    description="An AMQP 1.0 message broker for qpidd users, in Python and Cython",
    python_requires=">=3.11",
    package_dir=PACKAGES,
    packages=list(PACKAGES),
    package_data={"cypid.pyx": ["*.pxd", "*.pyx"], "cypid.ha.ocf": ["cypid"],
                  "cypid.broker.http": ["static/*.*", "static/vendor/*"]},
    ext_modules=extensions(),
    install_requires=[
        "ConfigArgParse==1.9.0",
        "uvloop==0.23.0",
        "python-qpid-proton==0.40.0",
        "numpy>=1.26",
        "scramp==1.5.0",
        "aiohttp==3.14.5",
    ],
    extras_require={
        "test": [
            "pytest==9.2.0",
            "pytest-benchmark==5.3.1",
            "hypothesis==6.170.17",
            "pytest-timeout==2.4.0",
            "pytest-xdist==3.8.0",
            "prometheus-client==0.26.0",
            "selenium==4.51.0",
        ],
    },
    entry_points={
        "console_scripts": [
            "qpidd = cypid.broker.main:main",
            "qpid-journal = cypid.tools.journal_tool:main",
            "qpid-config = cypid.tools.config:main",
            "qpid-stat = cypid.tools.stat:main",
            "qpid-tool = cypid.tools.tool:main",
            "qpid-printevents = cypid.tools.printevents:main",
            "qpid-ha = cypid.tools.qpid_ha:main",
            "cypid-ocf-agent = cypid.ha.ocf:main",
            "qpid-route = cypid.tools.route:main",
            "qpid-perftest = cypid.perf.perftest:main",
            "qpid-latency-test = cypid.perf.latency:main",
            "qpid-perf-compare = cypid.perf.compare:main",
            "cypid-saslpasswd = cypid.tools.saslpasswd:saslpasswd_main",
            "cypid-sasldblistusers = cypid.tools.saslpasswd:sasldblistusers_main",
        ],
    },
    zip_safe=False,
)
