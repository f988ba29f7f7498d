#!/usr/bin/env nextflow
/*
    evoscan: genomic windows that a DNA language model calls alike while no alignment can see
    any similarity, with the checks that make such a call believable. Steps are `evoscan`
    subcommands (bin/evoscan; the package is installed in the containers).

    nextflow run . -profile test,docker
    nextflow run . -profile slurm,singularity,gpu --input samplesheet.csv --backend evo2 --outdir results
*/
include { EVOSCAN } from './workflows/evoscan'

// One row per gene set: sample, fasta (loci) | genome + gtf + genes (names or all, gene_type) |
// genome + regions (BED). Relative paths are read from the samplesheet's own folder, so a
// samplesheet travels with its data.
def locate(Path sheet, String name) {
    return name.startsWith('/') || name.contains('://') ? file(name, checkIfExists: true) : file(sheet.parent.resolve(name).toString(), checkIfExists: true)
}

workflow {
    main:
    if (!params.input) {
        error("evoscan: give --input samplesheet.csv (columns sample,fasta,genome,gtf,genes), or use -profile test")
    }
    sheet = file(params.input as String, checkIfExists: true)
    ch_samples = channel.fromPath(params.input as String)
        .splitCsv(header: true)
        .map { row ->
            def r = row as Map<String, String>
            def meta = [id: r['sample'], genes: r['genes'] ?: '', gene_type: r['gene_type'] ?: '']
            def gtf = r['gtf'] ? [locate(sheet, r['gtf'])] : []
            def regions = r['regions'] ? [locate(sheet, r['regions'])] : []
            tuple(meta, locate(sheet, r['fasta'] ?: r['genome']), gtf, regions)
        }
    rmsk = params.rmsk ? [file(params.rmsk as String, checkIfExists: true)] : []
    families = params.families ? [file(params.families as String, checkIfExists: true)] : []
    // files are staged into the tasks (an hf model directory too); a JASPAR release name, an evo2
    // model name and `--weights random` are options
    motifs = params.motifs ==~ /JASPAR\d{4}/ ? [] : [file(params.motifs as String, checkIfExists: true)]
    weights = params.weights && params.weights != 'random' ? [file(params.weights as String, checkIfExists: true)] : []
    model_dir = params.backend == 'hf' && params.model ? [file(params.model as String, checkIfExists: true)] : []
    EVOSCAN(ch_samples, rmsk, params.embed_chunks as Integer, params.search_chunks as Integer, families, motifs, weights, model_dir)

    publish:
    report = EVOSCAN.out.report
    candidates = EVOSCAN.out.candidates
    motif_sites = EVOSCAN.out.motif_sites
    pairs = EVOSCAN.out.pairs
    bedpe = EVOSCAN.out.bedpe
    interact = EVOSCAN.out.interact
    bedgraph = EVOSCAN.out.bedgraph
    summary = EVOSCAN.out.summary
    scores = EVOSCAN.out.scores
}

// Everything `evoscan run` writes for a gene set, in <outdir>/<sample>/ (report.html first).
output {
    report {
        path { meta, _html -> "${meta.id}" }
    }
    candidates {
        path { meta, _tsv -> "${meta.id}" }
    }
    motif_sites {
        path { meta, _tsv -> "${meta.id}" }
    }
    pairs {
        path { meta, _tsv -> "${meta.id}" }
    }
    bedpe {
        path { meta, _bedpe -> "${meta.id}" }
    }
    interact {
        path { meta, _bed, _as -> "${meta.id}" }
    }
    bedgraph {
        path { meta, _bedgraph -> "${meta.id}" }
    }
    summary {
        path { meta, _txt -> "${meta.id}" }
    }
    scores {
        path { meta, _h5 -> "${meta.id}" }
    }
}
